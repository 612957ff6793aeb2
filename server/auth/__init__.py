"""Who is connected (authentication) and what they may do (authorization)."""
