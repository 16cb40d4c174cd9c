"""ratingrl.experiments"""
