/* log: placeholder until the module lands. */
#include "log.h"
