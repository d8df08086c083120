"""The generation loop and what it needs (thesis ch. 3):

    config.py     the run's one YAML config (``popdistill run CONFIG``), validated when loaded
    loop.py       ``run_pipeline(cfg)``: teacher -> selection -> population -> evaluation,
                  generation after generation, resumable step by step
    steps.py      what each step returns, typed (recorded in the manifest)
    manifest.py   the finished steps of a run directory (and what each returned)
    heldout.py    held-out evaluation of a generation
    report.py     the results table, report.json; html_report.py: report.html
    run_dir.py    reading a finished run directory back (analyses, benchmarks)
    lock.py, integrity.py   one writer per run directory; finished steps verified on resume
"""
