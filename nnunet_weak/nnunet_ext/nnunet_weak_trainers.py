# Shim read by nnU-Net's trainer lookup. Absolute imports only: this folder is imported as a top-level path.
from nnunet_weak.training.budget import nnUNetTrainerBudget  # noqa: F401
from nnunet_weak.training.pce import nnUNetTrainerPCE  # noqa: F401
from nnunet_weak.training.labelled_only import (nnUNetTrainerFewLabels, nnUNetTrainerFewLabels_padBackground,  # noqa: F401
                                                  nnUNetTrainerLabelledOnly)
from nnunet_weak.training.weak_base import nnUNetTrainerWeakBase  # noqa: F401
from nnunet_weak.training.paseg import (nnUNetTrainerPASeg, nnUNetTrainerPASeg_allHeads,  # noqa: F401
                                        nnUNetTrainerPASeg_control, nnUNetTrainerPASeg_fixedRamp,
                                        nnUNetTrainerPASeg_fullAug, nnUNetTrainerPASeg_lowCRF,
                                        nnUNetTrainerPASeg_lateRamp, nnUNetTrainerPASeg_noDS,
                                        nnUNetTrainerPASegAux, nnUNetTrainerPASegAux_lateRamp)
from nnunet_weak.training.paseg_scm import nnUNetTrainerPASegSCM  # noqa: F401
from nnunet_weak.training.pclmix import (nnUNetTrainerPCLMix, nnUNetTrainerPCLMix_bnProjection,  # noqa: F401
                                         nnUNetTrainerPCLMix_legacyContrast, nnUNetTrainerPCLMix_noContrast,
                                         nnUNetTrainerPCLMix_noMix, nnUNetTrainerPCLMix_partialDice)
from nnunet_weak.training.dkuxnet import (nnUNetTrainerDKUXNet, nnUNetTrainerDKUXNet_DS,  # noqa: F401
                                          nnUNetTrainerDKUXNet_KL, nnUNetTrainerDKUXNet_lite,
                                          nnUNetTrainerDKUXNet_paperGroups, nnUNetTrainerDKUXNet_AdamW,
                                          nnUNetTrainerDKUXNet_lite_AdamW, nnUNetTrainerDKUXNet_labelledOnly,
                                          nnUNetTrainerDKUXNet_lite_labelledOnly,
                                          nnUNetTrainerDKUXNet_lite_labelledOnly_weakView,
                                          nnUNetTrainerDKUXNet_lite_predictWeakView,
                                          nnUNetTrainerDKUXNet_predictWeakView, nnUNetTrainerDKUXNet_shared)
from nnunet_weak.training.kmax import (nnUNetTrainerKMaX, nnUNetTrainerKMaX_lite,  # noqa: F401
                                       nnUNetTrainerKMaX_queryLoss)
from nnunet_weak.training.dynamic_mix import nnUNetTrainerDynamicMix, nnUNetTrainerDynamicMix_dsHead  # noqa: F401,E501
from nnunet_weak.training.dual_kmax import (nnUNetTrainerDualKMaX, nnUNetTrainerDualKMaX_lite,  # noqa: F401
                                            nnUNetTrainerDualKMaX_lite_batchForeground,
                                            nnUNetTrainerDualKMaX_lite_noConsistency,
                                            nnUNetTrainerDualKMaX_lite_predictStrongView,
                                            nnUNetTrainerDualKMaX_predictStrongView)
from nnunet_weak.training.modelmix import (nnUNetTrainerModelMix, nnUNetTrainerModelMix_official,  # noqa: F401
                                           nnUNetTrainerModelMixAux)
