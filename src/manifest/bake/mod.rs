//! Bake files (manifold.yaml): several build targets, built together and pushed together.
