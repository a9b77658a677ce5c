"""Tests of projects/ifc: the IFC model, its official ops and parameter count."""
