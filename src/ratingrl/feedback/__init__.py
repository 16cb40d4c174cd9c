"""ratingrl.feedback"""
