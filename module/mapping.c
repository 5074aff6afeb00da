/* mapping: placeholder until the module lands. */
#include "mapping.h"
