/* directory: placeholder until the module lands. */
#include "directory.h"
