"""The test suite; its folders mirror the package (vis_zoo/, projects/, tools/)."""
