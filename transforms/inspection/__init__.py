"""Looking inside a finished output: manifest summary, decoded rows and verification."""
