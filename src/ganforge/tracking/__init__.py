"""The only package that imports mlflow, one job per module:

  store      where runs live (the project's sqlite store or MLFLOW_TRACKING_URI), the training experiment,
             the Run handle (params, metrics, images, dataset input) and the training run's resume policy
  serving    the generator as a registered pyfunc model (answers with ganforge.sampling.generate)
  promotion  the champion policy and its lock
"""
