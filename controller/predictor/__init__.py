"""The surrogate predictor: guesses a cell's validation accuracy from its tokens.

    ens = fit_ensemble(space, cells, rewards, kind="lstm", members=5, epochs=200, seed=0,
                       first_level=True)              # -> Ensemble (TensorFlow used here only)
    ens.predict(batch)                                 # (N,) float32, mean of the members
    ens.predict(batch, return_members=True)            # (members, N)
    ens.predict(batch, engine="numpy")                 # or "tensorflow" (LSTM; GPU if any); default "auto"
    Ensemble.from_bytes(ens.to_bytes())                # store/load; NumPy alone can score
    fit_ensemble(space, more_cells, more_rewards, init=ens, epochs=finetune_epochs(200))
                                                       # fine-tune: members start from ens's
    spearman(predicted, true)

Modules: `tokens` (cells -> model tokens), `keras_models` (members and their training),
`fast` (NumPy scoring over shared prefixes), `tf_scoring` (the same in TensorFlow, all
members at once, compiled), `ensemble` (the public API above).
"""

from controller.predictor.ensemble import Ensemble, finetune_epochs, fit_ensemble, kfold_holdout, spearman

__all__ = ["Ensemble", "finetune_epochs", "fit_ensemble", "kfold_holdout", "spearman"]
