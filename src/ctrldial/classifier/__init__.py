"""The judge: a single-label act or emotion classifier — train, evaluate, score generated responses.

Flow: corpus utterances → examples and batches (data.py) → fine-tuning (train.py) → a saved folder and
its ``Scorer`` (scorer.py; several saved classifiers judge as one ``Ensemble``, ensemble.py) → test
metrics (evaluate.py, metrics.py).
"""

from ctrldial.classifier.ensemble import Ensemble, make_ensemble
from ctrldial.classifier.evaluate import evaluate_classifier
from ctrldial.classifier.metrics import classification_metrics
from ctrldial.classifier.scorer import METADATA_FILE, Scorer, read_metadata
from ctrldial.classifier.train import train_classifier

__all__ = ["METADATA_FILE", "Ensemble", "Scorer", "make_ensemble", "classification_metrics", "evaluate_classifier", "read_metadata", "train_classifier"]
