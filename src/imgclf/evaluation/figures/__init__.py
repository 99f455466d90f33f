"""Every Matplotlib figure: training curves (curves), metric charts (charts), image grids (grids), a run's figures."""
