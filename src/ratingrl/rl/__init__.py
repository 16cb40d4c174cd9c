"""ratingrl.rl"""
