"""The study's report: tables, figures, the whole-study energy ledger and one self-contained page.

It joins the two records of the study (docs/architecture.md):

- DVC's current state, `metrics/train/<run>.json`, `metrics/eval/<run>.json` and
  `plots/train/<run>.tsv` of every run (a variant trained with one seed, named by its run key):
  one row per variant of the params file, its figures the means over its seeds (a variant with no
  run trained is shown as "not run"), then the reference rows (the mixture as the estimate, the
  oracle ideal ratio mask), next to the published figures (`pipeline.reference`, passed in by the
  stage with each variant's runs, model family and recipe changes);
- the MLflow store, the log of every run that ever happened, failed and killed ones included: the
  whole-study energy ledger. A run is *current* when its id is the `mlflow_run_id` of a current
  metrics file; the energy of every other run (superseded results, failed and killed runs,
  forecasts) is the price of getting to the current results.

A fair study judges every variant against seed noise: its difference from base, with a 95 %
interval from the spread between seeds, beside the paper's own difference (`effects`). Absolute
figures are compared with the paper's only at the paper's scale (its data and model sizes).

Outputs (dvc.yaml's stage `report`, written by `pipeline.stages.report`, each whole or not at all)::

    reports/tables/study.{md,csv,tex}        the paper's layout, ours (means over seeds) vs published
    reports/tables/effects.{md,csv,tex}      each variant vs base against seed noise, and the paper's
    reports/tables/recipes.{md,csv,tex}      what each variant changes, in words and recipe keys
    reports/tables/forecast.{md,csv,tex}     each run's own forecast against what it measured
    reports/tables/test.{md,csv,tex}         test set: published systems vs ours (cSDR and uSDR)
    reports/tables/ledger.{md,csv,json,tex}  the whole-study energy ledger
    reports/tables/learning_check.{md,csv,tex} each variant's margin over the trivial estimates
    reports/tables/runs.csv                  every MLflow run with its category in the ledger
    reports/figures/*.png                    see figures.FIGURES
    reports/index.html                       everything above on one page, images embedded

One concern per module, each importing only those before it: `inputs` (the metrics files),
`effects` (pure numbers: means over seeds, differences, intervals, verdicts), `ledger` (the MLflow
store's runs and their totals), `tables` (the table model, number formats, the store's tables),
`results` (the study, test set, learning check and forecast tables), `comparison` (effects and
recipes tables), `render` (CSV, Markdown, LaTeX, HTML), `labels` (placing point labels),
`plotting` (the figures' style and shared helpers), `scatter` (SDR against energy, the shape of
the study), `figures`, `page` (the HTML page). This file holds no code: importing a module loads
only what it imports. The package imports no config or training code: the stage passes in what
the config says.
"""
