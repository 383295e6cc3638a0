"""Everything zoo does with the Hugging Face Hub beyond loading a backbone: publishing runs (:mod:`zoo.hub.push`)
and fetching backbones ahead of time (:mod:`zoo.hub.fetch`).

All of it goes through ``huggingface_hub`` and so follows ``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HOME`` and
``HF_HUB_OFFLINE`` the way every Hugging Face library does.
"""
