"""The only package that imports mlflow, one job per module:

  store      where runs live (the project's sqlite store or MLFLOW_TRACKING_URI), the training experiment,
             the Run handle (params, metrics, images, dataset input) and the training run's resume policy
  serving    the generator as a registered pyfunc model (answers with ganforge.sampling.generate, bounded
             in images, bytes and class entries), the sha256 of its files recorded at registration, and
             load_verified, which checks them before anything is unpickled
  promotion  the champion policy and its lock (only versions whose files match are trusted)
  spool      best-effort logging for training: outages spooled and resent, permanent refusals set aside
  training   a one-process training stage's run around the engine (super-resolution, translation):
             checkpoint resume, the MLflow run, signals -> KILLED, failures -> FAILED
"""
