"""Analysis core on DINOv3 feature volumes (no Qt): PCA / affinity / similarity maps, threshold isolation
and few-click scribble segmentation. See docs/analysis.md; import the sub-modules (``.pca``,
``.affinity``, ``.similarity``, ``.isolate``, ``.segment``, ``.persist``) directly."""
