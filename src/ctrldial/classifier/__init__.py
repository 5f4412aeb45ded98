"""The judge: a single-label act or emotion classifier — train, evaluate, score generated responses.

Flow: corpus utterances → examples and batches (data.py) → fine-tuning (train.py) → a saved folder
(folder.py) and its ``Scorer`` (scorer.py; several saved classifiers, copied into one folder by
ensemble.py, judge as one ``Ensemble``; a hashed n-gram linear model, ngram.py, is a second judge of
another architecture) → test metrics (evaluate.py, metrics.py).
"""

from ctrldial.classifier.ensemble import make_ensemble
from ctrldial.classifier.evaluate import evaluate_classifier
from ctrldial.classifier.folder import METADATA_FILE, read_metadata
from ctrldial.classifier.metrics import classification_metrics
from ctrldial.classifier.ngram import NgramScorer
from ctrldial.classifier.scorer import Ensemble, Scorer
from ctrldial.classifier.train import train_classifier

__all__ = ["METADATA_FILE", "Ensemble", "NgramScorer", "Scorer", "make_ensemble", "classification_metrics", "evaluate_classifier", "read_metadata", "train_classifier"]
