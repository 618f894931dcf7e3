// stb_image for the fuzz targets, compiled here with the sanitizers and coverage. The main build links Debian's
// libstb, which is built from this same header (libstb-dev).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
