"""ratingrl.app"""
