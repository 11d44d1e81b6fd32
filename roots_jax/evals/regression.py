"""Regression: Pearson and Spearman correlation of the predicted scores."""

from roots_jax import metrics
from roots_jax.evals.labelled import Labelled, flat


class Regression(Labelled):

  def predict(self, params, batch, outputs):
    return outputs

  def metrics(self, rows, sums):
    predictions, targets = flat(rows, "label", "label_weight")
    return {"pearson": metrics.pearson(predictions, targets),
            "spearman": metrics.spearman(predictions, targets)}
