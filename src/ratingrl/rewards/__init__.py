"""ratingrl.rewards"""
