"""General transformations (Hello World and friends); the Spotify chain lives in spotify_mpc/."""
