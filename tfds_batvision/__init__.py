"""TFDS builder for BatVision (BV1, BV2, BV1 triples) and the physical room simulator."""
