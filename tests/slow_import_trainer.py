"""A trainer module whose import takes PNAS_TEST_IMPORT_SECONDS, as TensorFlow's does on a busy host."""

import os
import time

from tests.fakes import instant_trainer

time.sleep(float(os.environ.get("PNAS_TEST_IMPORT_SECONDS", "0")))
train = instant_trainer
