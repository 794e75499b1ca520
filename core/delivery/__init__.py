"""Stage 5, delivery: a trained model handed over (exports, model card, report) and models brought in (Teachable Machine, server imports)."""
