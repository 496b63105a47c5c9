"""Session fixtures with real MobileNet features extracted once by the features stage."""
