"""The study's report: tables, figures, the whole-study energy ledger and one self-contained page.

It joins the two records of the study (docs/architecture.md):

- DVC's current state, `metrics/train/<variant>.json`, `metrics/eval/<variant>.json` and
  `plots/train/<variant>.tsv`: one row per variant of the params file (a variant without metrics is
  shown as "not run"), then the reference rows (the mixture as the estimate, the oracle ideal ratio
  mask), next to the published figures of `reports/reference/`;
- the MLflow store, the log of every run that ever happened, failed and killed ones included: the
  whole-study energy ledger. A run is *current* when its id is the `mlflow_run_id` of a current
  metrics file; the energy of every other run (superseded results, failed and killed runs,
  forecasts) is the price of getting to the current results.

Outputs (dvc.yaml's stage `report`, written by `pipeline.stages.report`, each whole or not at all)::

    reports/tables/study.{md,csv,tex}        the paper's layout, ours vs published and the difference
    reports/tables/test.{md,csv,tex}         test set: published systems vs ours (cSDR and uSDR)
    reports/tables/ledger.{md,csv,json,tex}  the whole-study energy ledger
    reports/tables/learning_check.{md,csv,tex} each variant's margin over the trivial estimates
    reports/tables/runs.csv                  every MLflow run with its category in the ledger
    reports/figures/*.png                    see figures.FIGURES
    reports/index.html                       everything above on one page, images embedded

One concern per module, each importing only those before it: `inputs` (the metrics files and the
published figures), `ledger` (the MLflow store's runs and their totals), `tables` (the table model
and the tables), `render` (CSV, Markdown, LaTeX, HTML), `labels` (placing point labels), `figures`,
`page` (the HTML page). This file holds no code: importing a module loads only what it imports.
"""
