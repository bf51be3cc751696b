"""Model repositories: user models served from exported artifacts and a manifest per version."""
