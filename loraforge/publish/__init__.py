"""Publishing an adapter: a Hub-ready folder, shown to the user, then uploaded to the Hugging Face Hub."""
