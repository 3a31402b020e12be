//! Every page of the fixture corpus (`tests/fixtures/pages/`) is one test: the extractor
//! must return what the fixture's side file expects. The corpus README states the rules.

#[path = "common/fixtures.rs"]
mod fixtures;

use fixtures::Fixture;

/// Reads the fixture offline, with the content type it would be served with.
fn check(name: &str) {
    let f = Fixture::load(name);
    let report = f
        .extractor()
        .extract(&f.url, &f.body, Some(&f.content_type));
    f.assert_report(&report);
}

macro_rules! fixtures {
    ($($test:ident => $name:literal,)*) => {
        $(#[test] fn $test() { check($name); })*

        /// A fixture added to the folder without a test here would silently not run.
        #[test]
        fn every_fixture_in_the_folder_is_a_test() {
            let mut listed = vec![$($name),*];
            listed.sort_unstable();
            assert_eq!(listed, fixtures::names());
            assert!(listed.len() >= 40);
        }
    };
}

fixtures! {
    au_dollar_tld_hint => "au-dollar-tld-hint",
    bare_dollar_no_currency_hint => "bare-dollar-no-currency-hint",
    bigcommerce_cornerstone => "bigcommerce-cornerstone",
    br_brl_vtex_aggregate_offer => "br-brl-vtex-aggregate-offer",
    broken_jsonld_control_characters => "broken-jsonld-control-characters",
    broken_jsonld_html_comment => "broken-jsonld-html-comment",
    broken_jsonld_quot_entities => "broken-jsonld-quot-entities",
    broken_jsonld_trailing_commas => "broken-jsonld-trailing-commas",
    broken_jsonld_truncated_microdata_fallback => "broken-jsonld-truncated-microdata-fallback",
    call_for_price_text_only => "call-for-price-text-only",
    ch_chf_apostrophe_microdata => "ch-chf-apostrophe-microdata",
    conflicting_prices_jsonld_meta_related => "conflicting-prices-jsonld-meta-related",
    de_de_microdata_comma_decimal => "de-de-microdata-comma-decimal",
    electronics_retailer_large_state_blob => "electronics-retailer-large-state-blob",
    es_es_jsonld_comma_price_string => "es-es-jsonld-comma-price-string",
    fr_fr_prestashop_narrow_nbsp => "fr-fr-prestashop-narrow-nbsp",
    in_inr_lakh_jsonld => "in-inr-lakh-jsonld",
    it_it_jsonld_eur => "it-it-jsonld-eur",
    jp_shift_jis_microdata => "jp-shift-jis-microdata",
    jp_yen_jsonld => "jp-yen-jsonld",
    jsonld_aggregate_offer_price_only => "jsonld-aggregate-offer-price-only",
    jsonld_aggregate_offer_price_range => "jsonld-aggregate-offer-price-range",
    jsonld_graph_with_related_itemlist => "jsonld-graph-with-related-itemlist",
    jsonld_multiple_scripts_array => "jsonld-multiple-scripts-array",
    jsonld_multiple_sellers_lowest_in_stock => "jsonld-multiple-sellers-lowest-in-stock",
    jsonld_nested_related_products_trap => "jsonld-nested-related-products-trap",
    jsonld_out_of_stock => "jsonld-out-of-stock",
    jsonld_preorder => "jsonld-preorder",
    magento2_luma_microdata_and_jsonld => "magento2-luma-microdata-and-jsonld",
    magento2_special_price_microdata => "magento2-special-price-microdata",
    marketplace_spans_no_site_rule => "marketplace-spans-no-site-rule",
    marketplace_spans_site_rule_uk => "marketplace-spans-site-rule-uk",
    microdata_content_attribute_wins => "microdata-content-attribute-wins",
    microdata_multiple_offers_variant_url => "microdata-multiple-offers-variant-url",
    microdata_only_nested_itemlist => "microdata-only-nested-itemlist",
    nl_nl_meta_itemprop_only => "nl-nl-meta-itemprop-only",
    no_price_product_without_offers => "no-price-product-without-offers",
    opengraph_og_price_only => "opengraph-og-price-only",
    opengraph_product_price_only => "opengraph-product-price-only",
    pl_pl_site_rule_zloty => "pl-pl-site-rule-zloty",
    productgroup_variant_sku_param => "productgroup-variant-sku-param",
    sap_commerce_occ_product => "sap-commerce-occ-product",
    schema_aggregate_lowprice_mistyped_offer_uk => "schema-aggregate-lowprice-mistyped-offer-uk",
    schema_aggregate_lowprice_single_seller_hu => "schema-aggregate-lowprice-single-seller-hu",
    schema_listprice_saleprice_jsonld_fr => "schema-listprice-saleprice-jsonld-fr",
    schema_mainentity_ref_spec_ref_ch => "schema-mainentity-ref-spec-ref-ch",
    schema_offer_id_ref_yoast_graph_ie => "schema-offer-id-ref-yoast-graph-ie",
    schema_offer_id_refs_sellers_uk => "schema-offer-id-refs-sellers-uk",
    schema_pricespec_microdata_cz_vat => "schema-pricespec-microdata-cz-vat",
    schema_pricespec_microdata_nl => "schema-pricespec-microdata-nl",
    schema_productgroup_graph_isvariantof_se => "schema-productgroup-graph-isvariantof-se",
    schema_productgroup_variant_path_url_at => "schema-productgroup-variant-path-url-at",
    schema_productgroup_variant_query_url_us => "schema-productgroup-variant-query-url-us",
    schema_unitprice_per_kg_jsonld_de => "schema-unitprice-per-kg-jsonld-de",
    shopify_no_variant_lowest_in_stock => "shopify-no-variant-lowest-in-stock",
    shopify_productgroup_hasvariant => "shopify-productgroup-hasvariant",
    shopify_products_handle_js => "shopify-products-handle-js",
    shopify_variant_param_unknown => "shopify-variant-param-unknown",
    shopify_variant_selected => "shopify-variant-selected",
    site_aliexpress_com_us_dollar => "site-aliexpress-com-us-dollar",
    site_allegro_pl_aria_label => "site-allegro-pl-aria-label",
    site_amazon_co_jp_whole_only_yen => "site-amazon-co-jp-whole-only-yen",
    site_amazon_co_uk_coreprice_book => "site-amazon-co-uk-coreprice-book",
    site_amazon_com_br_split => "site-amazon-com-br-split",
    site_amazon_com_list_used_other_sellers => "site-amazon-com-list-used-other-sellers",
    site_amazon_com_mx_split_peso => "site-amazon-com-mx-split-peso",
    site_amazon_de_split_comma_whole => "site-amazon-de-split-comma-whole",
    site_amazon_fr_split => "site-amazon-fr-split",
    site_amazon_in_lakh_split => "site-amazon-in-lakh-split",
    site_bestbuy_com_customer_price => "site-bestbuy-com-customer-price",
    site_bol_com_promo_price => "site-bol-com-promo-price",
    site_ebay_de_buy_it_now => "site-ebay-de-buy-it-now",
    site_flipkart_com_special_price => "site-flipkart-com-special-price",
    site_mercadolibre_com_ar_split => "site-mercadolibre-com-ar-split",
    site_otto_de_reduced => "site-otto-de-reduced",
    site_target_com_sale_reg_price => "site-target-com-sale-reg-price",
    site_walmart_com_rollback => "site-walmart-com-rollback",
    site_zalando_de_sale => "site-zalando-de-sale",
    squarespace_commerce_mxn => "squarespace-commerce-mxn",
    tld_ars_bare_amount_com_ar => "tld-ars-bare-amount-com-ar",
    tld_chf_bare_amount_ch => "tld-chf-bare-amount-ch",
    tld_com_bare_amount_stays_ambiguous => "tld-com-bare-amount-stays-ambiguous",
    tld_jpy_bare_amount_co_jp => "tld-jpy-bare-amount-co-jp",
    tld_pln_bare_amount_pl => "tld-pln-bare-amount-pl",
    tld_sek_kr_sign_se => "tld-sek-kr-sign-se",
    twitter_card_site_rule_attribute => "twitter-card-site-rule-attribute",
    windows_1252_de_microdata_euro_byte => "windows-1252-de-microdata-euro-byte",
    windows_1252_fr_header_charset_only => "windows-1252-fr-header-charset-only",
    wix_stores_jsonld => "wix-stores-jsonld",
    woocommerce_pricespecification_sale => "woocommerce-pricespecification-sale",
    woocommerce_yoast_graph_gbp => "woocommerce-yoast-graph-gbp",
    zero_price_jsonld_call_for_price => "zero-price-jsonld-call-for-price",
}

/// The JSON-LD fast path must never change a report: every fixture, whole and cut short at
/// a few places (unclosed scripts, tags and comments), under the rules its side file names
/// and under none, reads the same with the fast path on and off.
#[test]
fn the_fast_path_gives_the_full_scans_reports() {
    use pricewatch::price::extract::{Extractor, Pass};
    use pricewatch::price::rules::Rules;

    let mut fast = 0;
    let mut pages = 0;
    for name in fixtures::names() {
        let f = Fixture::load(&name);
        let pairs = [
            (f.extractor(), f.extractor().with_fast_path(false)),
            (
                Extractor::new(Rules::default(), fixtures::MAX_BYTES),
                Extractor::new(Rules::default(), fixtures::MAX_BYTES).with_fast_path(false),
            ),
        ];
        for (on, off) in &pairs {
            let cuts = (1..8).map(|i| f.body.len() * i / 8);
            for cut in cuts.chain([f.body.len()]) {
                let body = &f.body[..cut];
                let (want, full) = off.extract_pass(&f.url, body, Some(&f.content_type));
                assert_ne!(full, Pass::Fast);
                let (got, pass) = on.extract_pass(&f.url, body, Some(&f.content_type));
                assert_eq!(got, want, "{name}, first {cut} bytes, {pass:?}");
                pages += 1;
                fast += usize::from(pass == Pass::Fast);
            }
        }
    }
    assert!(
        fast >= 40,
        "the fast path read only {fast} of {pages} pages"
    );
}
