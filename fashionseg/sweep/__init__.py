"""A Hydra multirun's report: its jobs (``jobs``), the CSV, Markdown and PNG (``render``)
and the Hydra callback that writes it (``callback``); ``fashionseg.sweep_report`` is the
command line."""
