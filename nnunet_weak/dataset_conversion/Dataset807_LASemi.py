"""Left Atrium 2018 (UA-MT h5 layout) with 8 or 16 labelled cases as nnU-Net v2 raw dataset 807 / 808.

    python dataset_conversion/Dataset807_LASemi.py ROOT NNUNET_RAW (--labelled-fraction 0.1 | --labelled 8)
        [--dataset-id ID] [--overwrite]

ROOT holds ``2018LA_Seg_Training Set/<case>/mri_norm2.h5``, ``train.list`` and ``test.list`` (UA-MT's ``data/``).
The first N cases of train.list keep their labels (UA-MT's 10 % = 8, 20 % = 16), the other training cases become
all-ignore; the test.list cases go to imagesTs / labelsTs. Output ``Dataset807_LASemi8`` or ``Dataset808_LASemi16``
(``--dataset-id`` for other counts); details in ``nnunet_weak.annotation.la_semi``. Needs ``pip install h5py``.
"""
from nnunet_weak.annotation.la_semi import main as la_main


def main(argv=None) -> str:
    return la_main(argv, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
