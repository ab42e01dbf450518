"""Reports written from finished (or running) trainings.

- :mod:`~fashionseg.reporting.run_results`: one run's ``metrics.json``, ``results.md`` and
  ``confusion_matrix.png`` (written by train and evaluate).
- :mod:`~fashionseg.reporting.model_card`: one run's ``MODEL_CARD.md`` (written by train;
  :func:`~fashionseg.reporting.model_card.write_model_card` for an exporter).
- :mod:`~fashionseg.reporting.results_table`: the results rows, trained and collected into
  one Markdown table (command line: ``python -m fashionseg.report``).
- :mod:`~fashionseg.reporting.sweep`: a Hydra multirun's report, ``sweep_report.{csv,md,png}``
  (command line: ``python -m fashionseg.sweep_report``), made of its jobs
  (:mod:`~fashionseg.reporting.sweep_jobs`) and files (:mod:`~fashionseg.reporting.sweep_render`),
  and written during every multirun by
  :class:`~fashionseg.reporting.sweep_hydra_callback.SweepReportCallback`.
"""
