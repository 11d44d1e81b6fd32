"""Classification: accuracy, macro F1 and Matthews correlation of the argmax class."""

from roots_jax import metrics
from roots_jax.evals.labelled import Labelled, flat


class Classification(Labelled):

  def metrics(self, rows, sums):
    predictions, targets = flat(rows, "label", "label_weight")
    return {"accuracy": metrics.accuracy(predictions, targets),
            "macro_f1": metrics.macro_f1(predictions, targets),
            "mcc": metrics.matthews_corrcoef(predictions, targets)}
