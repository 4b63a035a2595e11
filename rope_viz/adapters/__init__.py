"""Model families: one adapter per kind of model says where its positions live and how to change them."""
