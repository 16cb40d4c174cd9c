"""ratingrl.ordinal"""
