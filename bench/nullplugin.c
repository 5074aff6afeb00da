/* nullplugin: a SLAPI plugin that registers the same hooks as openai_revoke.so
 * and does nothing in them.  The overhead benchmark loads it beside "no
 * plugin" and "openai_revoke.so" to tell slapd's own SLAPI cost (a pblock
 * per operation, the calls) from ours.  Not installed. */
#include <slapi-plugin.h>

int nullplugin_init(Slapi_PBlock *pb);

static int nothing(Slapi_PBlock *pb)
{
	(void)pb;
	return 0;
}

static Slapi_PluginDesc desc = { "nullplugin", "openai-revoke benchmarks", "0",
                                 "does nothing, for measuring SLAPI itself" };

__attribute__((visibility("default"))) int nullplugin_init(Slapi_PBlock *pb)
{
	if (slapi_pblock_set(pb, SLAPI_PLUGIN_VERSION, SLAPI_PLUGIN_VERSION_03) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_DESCRIPTION, &desc) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_PRE_DELETE_FN, (void *)nothing) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_PRE_RESULT_FN, (void *)nothing) != 0 ||
	    slapi_pblock_set(pb, SLAPI_PLUGIN_POST_DELETE_FN, (void *)nothing) != 0)
		return -1;
	return 0;
}
