"""Token classification: accuracy and macro F1 of the argmax tag over the tagged tokens;
results.json adds each tag's precision, recall, F1 and support."""

from roots_jax import metrics
from roots_jax.evals.labelled import Labelled, flat, per_class


class TokenClassification(Labelled):

  def metrics(self, rows, sums):
    predictions, targets = flat(rows, "tags", "tag_weights")
    return {"accuracy": metrics.accuracy(predictions, targets),
            "macro_f1": metrics.macro_f1(predictions, targets)}

  def details(self, rows):
    return {"per_class": per_class(rows, "tags", "tag_weights", self.labels.names)}
