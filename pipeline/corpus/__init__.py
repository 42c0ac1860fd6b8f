"""The default corpus (stage ``corpus``): seeded piano melodies rendered from a soundfont an installed
package ships, with their MIDI and frame-level ground truth. ``render`` holds it all."""
