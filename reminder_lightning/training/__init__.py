"""Training the reminder with Lightning: the SAPT objective and the LightningModule."""
