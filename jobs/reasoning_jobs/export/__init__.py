"""The export job: the trained model out of the run, as a merged Hugging Face directory and/or the adapter."""
