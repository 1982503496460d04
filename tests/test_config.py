"""The training configuration as saved in config.json and read back on resume."""
from train.config import TrainConfig


def test_a_config_saved_before_a_setting_existed_resumes_as_it_began():
    new = TrainConfig().resolved()
    assert TrainConfig.from_dict(new.to_dict()) == new
    old = {k: v for k, v in new.to_dict().items() if k not in ("negatives", "augment_from_epoch", "negatives_small",
                                                               "negatives_from_epoch")}
    cfg = TrainConfig.from_dict(old)
    assert cfg.negatives == 0.0 and cfg.augment_from_epoch == 0 and cfg.negatives_small == 0.0  # what such runs did
    assert cfg.negatives_from_epoch == 0
    assert new.augment_from_epoch > 0 and new.negatives_small > 0 and new.negatives_from_epoch > 0
