"""One module per DVC stage, in pipeline order: the entry point `seppo <stage>` runs.

Each module's ``run`` takes the validated params and the stage's paths (defaults from seppo.layout),
reads the section(s) the stage declares in the stage table (planning/table.py), calls the library
that does the work (world, models, data, evaluation, training, reports) and returns the metrics
that the command prints. A stage whose input can be at fault has ``expected()``: {exception class:
exit code}; the command prints such an error's message and exits with its code, without a traceback.

  image pipeline (dvc.yaml)      world, base_model, base_samples, ingest, validate, cache, scorer_model,
                                 select, refsamples, train (one of each per round), eval_generate,
                                 evaluate, report
  video pipeline (video/dvc.yaml) video_world, video_base, video_ingest, video_cache, video_select,
                                 video_refsamples, video_train (per arm and round), video_eval_generate,
                                 video_evaluate, video_report
"""
