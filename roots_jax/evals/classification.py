"""Classification: accuracy, macro F1 and Matthews correlation of the argmax class; results.json
adds each class's precision, recall, F1 and support."""

from roots_jax import metrics
from roots_jax.evals.labelled import Labelled, flat, per_class


class Classification(Labelled):

  def metrics(self, rows, sums):
    predictions, targets = flat(rows, "label", "label_weight")
    return {"accuracy": metrics.accuracy(predictions, targets),
            "macro_f1": metrics.macro_f1(predictions, targets),
            "mcc": metrics.matthews_corrcoef(predictions, targets)}

  def details(self, rows):
    return {"per_class": per_class(rows, "label", "label_weight", self.labels.names)}
