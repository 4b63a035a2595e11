"""What the pages measure: position methods, q/k capture, features, attribution and resolution sweeps."""
