using System.Text.RegularExpressions;

namespace LlavaMech.Hooks.Tests;

public class HookNamesTests
{
    /// <summary>The TransformerLens spelling of each per-layer hook, as the README's hook table documents it.</summary>
    private static readonly (Func<int, string> Format, string Suffix)[] PerLayer =
    [
        (HookNames.ResidPre, "hook_resid_pre"),
        (HookNames.AttnV, "attn.hook_v"),
        (HookNames.AttnPattern, "attn.hook_pattern"),
        (HookNames.AttnOut, "hook_attn_out"),
        (HookNames.ResidMid, "hook_resid_mid"),
        (HookNames.MlpPost, "mlp.hook_post"),
        (HookNames.MlpOut, "hook_mlp_out"),
        (HookNames.ResidPost, "hook_resid_post"),
    ];

    private static readonly Regex BlockName = new(@"^blocks\.(?<layer>0|[1-9][0-9]*)\.(?<suffix>[a-z_.]+)$", RegexOptions.CultureInvariant);

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(31)]
    [InlineData(123)]
    public void Each_per_layer_name_parses_back_to_its_layer_and_hook(int layer)
    {
        foreach (var (format, suffix) in PerLayer)
        {
            var name = format(layer);
            Assert.Equal($"blocks.{layer}.{suffix}", name);
            var m = BlockName.Match(name);
            Assert.True(m.Success, $"'{name}' is not blocks.<layer>.<hook>");
            Assert.Equal(layer, int.Parse(m.Groups["layer"].Value, System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(suffix, m.Groups["suffix"].Value);
            // formatting the parsed parts gives the same name back
            Assert.Equal(name, PerLayer.Single(p => p.Suffix == m.Groups["suffix"].Value).Format(int.Parse(m.Groups["layer"].Value)));
        }
    }

    [Fact]
    public void Model_level_names_are_the_transformer_lens_ones()
    {
        Assert.Equal("vision.hook_image_features", HookNames.ImageFeatures);
        Assert.Equal("hook_embed", HookNames.Embed);
        Assert.Equal("hook_resid_final", HookNames.ResidFinal);
        Assert.DoesNotMatch(BlockName, HookNames.ImageFeatures);
        Assert.DoesNotMatch(BlockName, HookNames.Embed);
        Assert.DoesNotMatch(BlockName, HookNames.ResidFinal);
    }

    [Theory]
    [InlineData(1, false)]
    [InlineData(4, true)]
    [InlineData(12, true)]
    [InlineData(40, false)]
    public void All_lists_every_hook_once_in_forward_order(int layers, bool hasVision)
    {
        var all = HookNames.All(layers, hasVision);
        Assert.Equal((hasVision ? 1 : 0) + 1 + 8 * layers + 1, all.Count);
        Assert.Equal(all.Count, all.Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(hasVision, all.Contains(HookNames.ImageFeatures));
        Assert.Equal(hasVision ? HookNames.ImageFeatures : HookNames.Embed, all[0]);
        Assert.Equal(HookNames.ResidFinal, all[^1]);

        // The block hooks come layer by layer, each layer's eight in the order a decoder layer reaches them.
        var blocks = all.Where(n => BlockName.IsMatch(n)).ToList();
        Assert.Equal(8 * layers, blocks.Count);
        for (int i = 0; i < blocks.Count; i++)
        {
            var m = BlockName.Match(blocks[i]);
            Assert.Equal(i / 8, int.Parse(m.Groups["layer"].Value));
            Assert.Equal(PerLayer[i % 8].Suffix, m.Groups["suffix"].Value);
        }
    }

    [Fact]
    public void Layer_1_and_layer_12_names_do_not_collide()
    {
        var one = HookNames.All(13, hasVision: false).Where(n => n.StartsWith("blocks.1.", StringComparison.Ordinal)).ToList();
        Assert.Equal(8, one.Count);
        Assert.All(one, n => Assert.Equal(1, int.Parse(BlockName.Match(n).Groups["layer"].Value)));
    }
}
