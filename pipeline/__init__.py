"""sepcost's pipeline: the stages of the study and what they share (docs/architecture.md).

`stages/` holds one module per stage and tool of the `sepcost` command (`cli`), each reading as its
recipe; the sub-packages hold the concerns they share: `config`, `data` (with `synth`, the built-in
songs), `training`, `inference`, `evaluation`, `energy`, `tracking` and `report`; small modules
hold what everything uses: `names`, `paths`, `errors`, `atomic`, `runtime`, `checkpoint`, `specs`
and `sources`. The models are in the `model` package, which never imports this one.
"""
