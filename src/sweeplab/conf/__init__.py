"""sweeplab's Hydra configs, shipped inside the package so that an installed sweeplab finds
them (Hydra's ``pkg://sweeplab.conf``). The YAML files beside this one are the source of
truth; the repository's top-level ``conf/`` is a symlink to this folder."""
