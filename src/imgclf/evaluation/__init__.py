"""Layer 5, evaluation: how good a model is, in numbers, pictures and a report (imports core to inference).

metrics (pure NumPy/scikit-learn), results (`Evaluation`), evaluate (predict
held-out images with a run, then measure, draw and report), explain (Grad-CAM,
embeddings), figures/ (every Matplotlib figure), report (report.html).
See docs/architecture.md.
"""
