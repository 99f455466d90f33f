"""`imgclf check`: the health report of a folder (health), its text and JSON (report), and quarantine."""
