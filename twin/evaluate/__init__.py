"""Evaluation: does the twin write more like me than the base model does? Above the chat stage,
whose models it loads and samples (`twin.evaluate.fidelity`); the style figures and the
discriminator test are pure functions of the replies (`twin.evaluate.style`,
`twin.evaluate.discriminator`); people's verdict comes from "Which one is me?"
(`twin.evaluate.game`)."""
