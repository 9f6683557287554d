"""Pipeline stages: each module computes one artifact (see atlasgen.pipeline and docs/artifacts.md)."""
